-- third_person_dance: one row per clip.
-- Third-person clips of a person dancing: the HumanNet taxonomy says dance, or the captions do.
with

final as (
    select clip_id, source, duration_s, taxonomy_l1, taxonomy_l2, taxonomy_l3
    from clip_facts
    where viewpoint = 'exo'
      and (
          lower(coalesce(taxonomy_l2, '')) like '%dance%'
          or lower(coalesce(taxonomy_l3, '')) like '%dance%'
          or regexp_matches(
              lower(concat_ws(' ', semantic_motion, short_caption)), '\bdanc(e|es|ing|er|ers)\b'
          )
      )
)

select * from final
