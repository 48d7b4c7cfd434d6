-- clip_facts: one row per clip, with its video's metadata, its annotation text and taxonomy,
-- and its hand/body/face/quality signals, predicted viewpoint and near-duplicate cluster
-- (clip_signals; null until those assets have run for the clip). Clips whose video is not here
-- yet (annotation-only catalogs) are kept, with probe_status 'not_probed' and null video columns.
-- The annotation text comes from the clip row (the clips stage copies the first non-null value
-- of each field over the clip's annotation rows), so a query reads one row per clip.
-- The video's metadata is on the clip row too (the clips stage copies it from videos), and the
-- keyframe count and signals come from clip_extras, one row per clip: a query that reads no
-- column of clip_extras reads clips alone (DuckDB drops the join), and one that does joins
-- once. (Joined to videos as well, DuckDB 2.0's join ordering kept every join; measured.)
with

clips as (
    select * from clips
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
        clips.source_video_id,
        clips.taxonomy_l1,
        clips.taxonomy_l2,
        clips.taxonomy_l3,
        clips.quality_score,
        clips.container,
        clips.codec,
        clips.width,
        clips.height,
        clips.rotation,
        clips.has_audio,
        clips.video_size_bytes,
        clips.video_duration_s,
        clips.short_caption,
        clips.long_caption,
        clips.semantic_motion,
        clips.motion_sequence,
        clips.environment,
        clips.subject_sex,
        clips.subject_appearance,
        clips.spatial_progression,
        clips.gait,
        clips.expression,
        clips.text_truncated,
        coalesce(clips.annotation_count, 0) as annotation_count,
        coalesce(clip_extras.keyframe_count, 0) as keyframe_count,
        case
            when clips.viewpoint in ('ego', 'exo') then clips.viewpoint
            else clip_extras.predicted_viewpoint
        end as resolved_viewpoint,
        case
            when clips.viewpoint in ('ego', 'exo') then 'label'
            when clip_extras.predicted_viewpoint is not null then 'predicted'
        end as viewpoint_origin,
        clip_extras.* exclude (clip_id, keyframe_count, is_cluster_representative),
        coalesce(clip_extras.is_cluster_representative, true) as is_cluster_representative
    from clips
    left join clip_extras on clip_extras.clip_id = clips.clip_id
)

select * from final
