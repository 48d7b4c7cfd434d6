-- egocentric_tool_use_over_30s: one row per clip.
-- First-person clips longer than 30 s in which the person uses a tool: the annotation text
-- names a tool or tool use, or the captions are close to "a person using a hand tool".
-- @params: {min_duration_s = 30.0, min_similarity = 0.45}
with

clips as (
    select
        clip_id,
        viewpoint,
        duration_s,
        source,
        lower(concat_ws(' ', semantic_motion, short_caption, long_caption)) as text
    from clip_facts
),

tool_use as (
    select
        clip_id,
        viewpoint,
        duration_s,
        source,
        regexp_matches(
            text,
            '\b(tools?|using an? |uses an? |operating|planer|screwdrivers?|wrench|hammer|saw|drill|pliers|solder\w*|irons?|ironing|flashlight|knife|scissors|tweezers|spatula|hoe)\b'
        ) as names_a_tool
    from clips
),

final as (
    select clip_id, viewpoint, duration_s, source, names_a_tool
    from tool_use
    where viewpoint = 'ego'
      and duration_s > $min_duration_s
      and (
          names_a_tool
          or coalesce(caption_similarity(clip_id, 'a person using a hand tool'), 0)
             >= $min_similarity
      )
)

select * from final
