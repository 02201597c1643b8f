{#
    The walk of int_category_tree: from `categories` (category_id, parent_id, disabled_raw), the CTEs
    ending in `resolved` (category_id, tree_status, root_category_id, depth, path, is_disabled_inherited,
    has_disabled_in_chain), with the rules the model documents. DuckDB doubles pointers (about log2(depth)
    rounds, each joining the recursive CTE to itself); Spark's recursive CTEs admit one reference to
    the recursive relation, so Spark walks one parent per round and stops a chain at its top or at the
    first category it meets twice (a loop): rounds = the deepest chain (profile:
    spark.sql.cteRecursionLevelLimit), same results.
#}
{% macro category_walk(path_max_ids) -%}
    {{ return(adapter.dispatch('category_walk', 'chat_analytics')(path_max_ids)) }}
{%- endmacro %}

{% macro duckdb__category_walk(path_max_ids) -%}
category_count as (

    select count(*) as categories
    from categories

),

{# One row per category and round; `above_id` is NULL once the segment ends at a top. #}
segments as (

    select
        0 as hop,
        1::bigint as reach,
        categories.category_id,
        categories.category_id as top_id,
        case when categories.parent_id is null then 'ok' else 'missing_parent' end as top_status,
        parents.category_id as above_id,
        1 as span,
        categories.disabled_raw as first_disabled_raw,
        coalesce(categories.disabled_raw, false) as has_disabled_in_chain,
        [categories.category_id] as path_ids
    from categories
    left join categories as parents
        on categories.parent_id = parents.category_id

    union all

    select
        segments.hop + 1 as hop,
        segments.reach * 2 as reach,
        segments.category_id,
        coalesce(above.top_id, segments.top_id) as top_id,
        coalesce(above.top_status, segments.top_status) as top_status,
        above.above_id,
        segments.span + coalesce(above.span, 0) as span,
        coalesce(segments.first_disabled_raw, above.first_disabled_raw) as first_disabled_raw,
        segments.has_disabled_in_chain or coalesce(above.has_disabled_in_chain, false) as has_disabled_in_chain,
        list_concat(above.path_ids, segments.path_ids)[-{{ path_max_ids }}:] as path_ids
    from segments
    cross join category_count
    left join segments as above
        on segments.above_id = above.category_id
    where
        segments.reach < category_count.categories
        and exists (
            select pending.category_id
            from segments as pending
            where pending.above_id is not null
        )

),

last_hop as (

    select max(hop) as hop
    from segments

),

resolved as (

    select
        segments.category_id,
        case when segments.above_id is null then segments.top_status else 'cycle' end as tree_status,
        case when segments.above_id is null then segments.top_id end as root_category_id,
        case when segments.above_id is null then segments.span - 1 end as depth,
        case
            when segments.above_id is not null then null
            when segments.span <= {{ path_max_ids }} then array_to_string(segments.path_ids, '/')
            else segments.top_id || '/…/' || array_to_string(segments.path_ids, '/')
        end as path,
        coalesce(segments.first_disabled_raw, false) as is_disabled_inherited,
        segments.has_disabled_in_chain
    from segments
    inner join last_hop
        on segments.hop = last_hop.hop

),
{%- endmacro %}

{% macro spark__category_walk(path_max_ids) -%}
walk as (

    select
        categories.category_id,
        categories.parent_id as next_id,
        categories.category_id as top_id,
        1 as span,
        categories.disabled_raw as first_disabled_raw,
        coalesce(categories.disabled_raw, false) as has_disabled_in_chain,
        array(categories.category_id) as path_ids,
        false as is_cycle
    from categories

    union all

    select
        walk.category_id,
        parents.parent_id as next_id,
        parents.category_id as top_id,
        walk.span + 1 as span,
        coalesce(walk.first_disabled_raw, parents.disabled_raw) as first_disabled_raw,
        walk.has_disabled_in_chain or coalesce(parents.disabled_raw, false) as has_disabled_in_chain,
        concat(array(parents.category_id), walk.path_ids) as path_ids,
        array_contains(walk.path_ids, parents.category_id) as is_cycle
    from walk
    inner join categories as parents
        on walk.next_id = parents.category_id
    where not walk.is_cycle

),

last_steps as (

    select
        *,
        row_number() over (partition by category_id order by span desc) as step_rank
    from walk

),

resolved as (

    select
        category_id,
        case
            when is_cycle then 'cycle'
            when next_id is null then 'ok'
            else 'missing_parent'
        end as tree_status,
        case when not is_cycle then top_id end as root_category_id,
        case when not is_cycle then span - 1 end as depth,
        case
            when is_cycle then null
            when span <= {{ path_max_ids }} then array_join(path_ids, '/')
            else top_id || '/…/' || array_join(slice(path_ids, span - {{ path_max_ids }} + 1, {{ path_max_ids }}), '/')
        end as path,
        coalesce(first_disabled_raw, false) as is_disabled_inherited,
        has_disabled_in_chain
    from last_steps
    where step_rank = 1

),
{%- endmacro %}
