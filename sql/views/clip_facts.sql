-- clip_facts: one row per clip, with its video's metadata, its annotation text and taxonomy,
-- and its hand/body/face/quality signals, predicted viewpoint and near-duplicate cluster
-- (clip_signals; null until those assets have run for the clip). Clips whose video is not here
-- yet (annotation-only catalogs) are kept, with probe_status 'not_probed' and null video columns.
with

clips as (
    select * from clips
),

videos as (
    select
        video_id,
        container,
        codec,
        width,
        height,
        rotation,
        has_audio,
        size_bytes,
        duration_s as video_duration_s,
        num_frames as video_num_frames
    from videos
),

annotation_text as (
    -- one row per clip: the first non-null value of each field over its annotation rows
    select
        clip_id,
        count(*) as annotation_count,
        any_value(short_caption) as short_caption,
        any_value(long_caption) as long_caption,
        any_value(semantic_motion) as semantic_motion,
        any_value(motion_sequence) as motion_sequence,
        any_value(environment) as environment,
        any_value(subject_sex) as subject_sex,
        any_value(subject_appearance) as subject_appearance,
        any_value(spatial_progression) as spatial_progression,
        any_value(gait) as gait,
        any_value(expression) as expression,
        any_value(source_video_id) as annotated_source_video_id,
        any_value(text_truncated) as text_truncated
    from annotations
    group by clip_id
),

keyframe_counts as (
    select clip_id, count(*) as keyframe_count
    from keyframes
    group by clip_id
),

final as (
    select
        clips.clip_id,
        clips.video_id,
        clips.source,
        clips.uri,
        clips.probe_status,
        clips.start_s,
        clips.end_s,
        clips.duration_s,
        clips.start_frame,
        clips.end_frame,
        clips.fps,
        clips.viewpoint,
        clips.segmentation,
        clips.external_id,
        coalesce(clips.source_video_id, annotation_text.annotated_source_video_id)
            as source_video_id,
        clips.taxonomy_l1,
        clips.taxonomy_l2,
        clips.taxonomy_l3,
        clips.quality_score,
        videos.container,
        videos.codec,
        videos.width,
        videos.height,
        videos.rotation,
        videos.has_audio,
        videos.size_bytes as video_size_bytes,
        videos.video_duration_s,
        annotation_text.short_caption,
        annotation_text.long_caption,
        annotation_text.semantic_motion,
        annotation_text.motion_sequence,
        annotation_text.environment,
        annotation_text.subject_sex,
        annotation_text.subject_appearance,
        annotation_text.spatial_progression,
        annotation_text.gait,
        annotation_text.expression,
        annotation_text.text_truncated,
        coalesce(annotation_text.annotation_count, 0) as annotation_count,
        coalesce(keyframe_counts.keyframe_count, 0) as keyframe_count,
        case
            when clips.viewpoint in ('ego', 'exo') then clips.viewpoint
            else clip_signals.predicted_viewpoint
        end as resolved_viewpoint,
        case
            when clips.viewpoint in ('ego', 'exo') then 'label'
            when clip_signals.predicted_viewpoint is not null then 'predicted'
        end as viewpoint_origin,
        clip_signals.* exclude (clip_id, is_cluster_representative),
        coalesce(clip_signals.is_cluster_representative, true) as is_cluster_representative
    from clips
    left join videos on videos.video_id = clips.video_id
    left join annotation_text on annotation_text.clip_id = clips.clip_id
    left join keyframe_counts on keyframe_counts.clip_id = clips.clip_id
    left join clip_signals on clip_signals.clip_id = clips.clip_id
)

select * from final
