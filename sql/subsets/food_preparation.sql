-- food_preparation: one row per clip.
-- The five clips whose captions are closest to "preparing food in a kitchen", any viewpoint:
-- a subset defined by a semantic predicate alone.
-- @semantic: {text = "preparing food in a kitchen", mode = "caption", top_k = 5}
select clip_id, viewpoint, source, duration_s, short_caption
from clip_facts
where annotation_count > 0
