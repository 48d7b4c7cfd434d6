-- third_person_dance: one row per clip.
-- Third-person clips of a person dancing: the HumanNet taxonomy says dance, or the captions do.
-- The cheap ilike runs first and the word-boundary regex only on the texts it lets through
-- (the same rows as the regex alone, in half the time at 10M clips; bench/README.md, Scale).
with

final as (
    select clip_id, source, duration_s, taxonomy_l1, taxonomy_l2, taxonomy_l3
    from clip_facts
    where viewpoint = 'exo'
      and (
          taxonomy_l2 ilike '%dance%'
          or taxonomy_l3 ilike '%dance%'
          or (
              semantic_motion ilike '%danc%'
              and regexp_matches(semantic_motion, '\bdanc(e|es|ing|er|ers)\b', 'i')
          )
          or (
              short_caption ilike '%danc%'
              and regexp_matches(short_caption, '\bdanc(e|es|ing|er|ers)\b', 'i')
          )
      )
)

select * from final
