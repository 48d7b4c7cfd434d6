-- clip_extras: what clip_facts adds to a clip from other tables, in one row per clip: its
-- keyframe count and its clip_signals row (see clip_signals). The two are stacked and grouped
-- by clip_id rather than joined, so DuckDB knows the view holds one row per clip and drops
-- clip_facts' join with it from a query that reads none of its columns: such a query then
-- reads neither clip_id nor any other table (at 10M clips, clip_id is the costliest column of
-- a scan; bench/README.md, Scale).
with

keyframe_counts as (
    select clip_id, count(*) as keyframe_count
    from keyframes
    group by clip_id
),

final as (
    select
        clip_id,
        sum(keyframe_count) as keyframe_count,
        any_value(columns(* exclude (clip_id, keyframe_count)))
    from (
        select * from keyframe_counts
        union all by name
        select * from clip_signals
    )
    group by clip_id
)

select * from final
