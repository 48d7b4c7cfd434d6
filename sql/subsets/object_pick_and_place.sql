-- object_pick_and_place: one row per clip.
-- Clips of a person picking up, carrying, putting down or placing an object, from either
-- viewpoint, as a fixed-size sample balanced between first- and third-person clips.
-- @sample: 6
-- @balance_by: "viewpoint"
-- @seed: 7
with

final as (
    select clip_id, viewpoint, source, duration_s, taxonomy_l3, semantic_motion
    from clip_facts
    where taxonomy_l3 in ('Picking Up', 'Putting Down', 'Carrying')
       or regexp_matches(
           lower(concat_ws(' ', semantic_motion, short_caption)),
           '\b(places?|placing|picks? up|picking up|puts? down|putting down)\b'
       )
)

select * from final
