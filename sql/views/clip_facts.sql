-- clip_facts: one row per clip, with its video's metadata, its annotation text and taxonomy,
-- and its hand/body/face/quality signals, predicted viewpoint and near-duplicate cluster
-- (clip_signals; null until those assets have run for the clip). Clips whose video is not here
-- yet (annotation-only catalogs) are kept, with probe_status 'not_probed' and null video columns.
-- The annotation text comes from the clip row (the clips stage copies the first non-null value
-- of each field over the clip's annotation rows), so a query reads one row per clip;
-- keyframe_counts is grouped by clip_id, so DuckDB drops that join from queries that do not
-- read keyframe_count.
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
        clips.source_video_id,
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
    left join keyframe_counts on keyframe_counts.clip_id = clips.clip_id
    left join clip_signals on clip_signals.clip_id = clips.clip_id
)

select * from final
