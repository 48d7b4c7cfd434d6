-- clip_signals: one row per clip that has signals, a viewpoint prediction or a near-duplicate
-- cluster: its most recent signals row (signals_model_id says which model made it), the
-- predicted viewpoint and its near-duplicate cluster. clip_facts joins it onto every clip.
with

latest_signals as (
    select *
    from signals
    qualify row_number() over (partition by clip_id order by computed_at desc, signal_id) = 1
),

clip_ids as (
    select clip_id from latest_signals
    union
    select clip_id from viewpoint_predictions
    union
    select clip_id from near_duplicates
),

final as (
    select
        clip_ids.clip_id,
        viewpoint_predictions.predicted_viewpoint,
        viewpoint_predictions.confidence as viewpoint_confidence,
        latest_signals.model_id as signals_model_id,
        latest_signals.frames as signal_frames,
        latest_signals.hands_frac,
        latest_signals.hands_0_frac,
        latest_signals.hands_1_frac,
        latest_signals.hands_2_frac,
        latest_signals.left_hand_frac,
        latest_signals.right_hand_frac,
        latest_signals.mean_hand_area,
        latest_signals.hand_motion,
        latest_signals.person_frac,
        latest_signals.full_body_frac,
        latest_signals.body_motion,
        latest_signals.max_persons,
        latest_signals.face_frac,
        latest_signals.max_faces,
        latest_signals.max_face_area,
        latest_signals.privacy_status,
        latest_signals.sharpness,
        latest_signals.min_sharpness,
        latest_signals.brightness,
        latest_signals.contrast,
        latest_signals.motion_score,
        latest_signals.camera_motion,
        latest_signals.static_camera,
        near_duplicates.near_duplicate_of,
        near_duplicates.cluster_id as duplicate_cluster_id,
        near_duplicates.cluster_size as duplicate_cluster_size,
        near_duplicates.is_representative as is_cluster_representative
    from clip_ids
    left join latest_signals on latest_signals.clip_id = clip_ids.clip_id
    left join viewpoint_predictions on viewpoint_predictions.clip_id = clip_ids.clip_id
    left join near_duplicates on near_duplicates.clip_id = clip_ids.clip_id
)

select * from final
