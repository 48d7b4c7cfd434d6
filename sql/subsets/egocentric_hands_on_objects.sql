-- egocentric_hands_on_objects: one row per clip.
-- First-person clips (labelled, or predicted with confidence) in which hands are visible in most
-- keyframes and work on something (they move, or both hands are out), no face is visible, the
-- frames are sharp enough, and only one clip of each near-duplicate cluster is kept.
-- @params: {min_hands_frac = 0.6, min_viewpoint_confidence = 0.8, min_sharpness = 100.0}
with

candidates as (
    select
        clip_id,
        source,
        duration_s,
        resolved_viewpoint,
        viewpoint_origin,
        viewpoint_confidence,
        hands_frac,
        hands_2_frac,
        hand_motion,
        sharpness,
        privacy_status,
        short_caption
    from exclude_near_duplicates(clip_facts)
),

final as (
    select *
    from candidates
    where resolved_viewpoint = 'ego'
      and (viewpoint_origin = 'label' or viewpoint_confidence >= $min_viewpoint_confidence)
      and hands_frac >= $min_hands_frac
      and (hand_motion > 0 or hands_2_frac > 0)
      and privacy_status = 'clear'
      and sharpness >= $min_sharpness
)

select * from final
