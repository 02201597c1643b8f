{#-
    The category tree of the current snapshot, resolved by walking UP from every category to its root
    (recursive SQL, any depth). The walk of one category stops at a root (empty parent), at a parent that
    is not in the snapshot, when the next parent is already on the walk (a cycle), or after
    var('category_max_depth') steps; so it always terminates.

    tree_status: `ok` (reaches a root), `missing_parent` (the topmost category reached names a parent that
    does not exist: that topmost category acts as the root), `cycle` (the ancestor_chain loops: no root, depth or
    path), `too_deep` (deeper than the limit: no root, depth or path).

    Disabled flags: an empty `disabled` inherits the nearest ancestor's value, a ancestor_chain with none is
    enabled (`is_disabled_inherited`). var('disabled_scope') = `subtree` (default): a category is
    effectively disabled when it or any ancestor is disabled (an explicit `false` below a disabled
    ancestor does not re-enable it); `self`: only the category's own, inherited value counts.
-#}

with recursive

categories as (

    select
        category_id,
        parent_id,
        disabled_raw
    from {{ ref('int_categories_current') }}

),

ancestry as (

    select
        categories.category_id,
        categories.category_id as ancestor_id,
        categories.parent_id as next_ancestor_id,
        categories.disabled_raw as ancestor_disabled_raw,
        0 as walk_step,
        [categories.category_id] as ancestor_chain
    from categories

    union all

    select
        ancestry.category_id,
        parents.category_id as ancestor_id,
        parents.parent_id as next_ancestor_id,
        parents.disabled_raw as ancestor_disabled_raw,
        ancestry.walk_step + 1 as walk_step,
        list_append(ancestry.ancestor_chain, parents.category_id) as ancestor_chain
    from ancestry
    inner join categories as parents
        on ancestry.next_ancestor_id = parents.category_id
    where
        not list_contains(ancestry.ancestor_chain, parents.category_id)
        and ancestry.walk_step < {{ var('category_max_depth') }}

),

walks as (

    select
        category_id,
        max(walk_step) as top_step,
        arg_max(ancestor_id, walk_step) as top_ancestor_id,
        arg_max_null(next_ancestor_id, walk_step) as top_next_ancestor_id,
        arg_max(ancestor_chain, walk_step) as ancestor_chain,
        coalesce(bool_or(ancestor_disabled_raw), false) as has_disabled_in_chain,
        coalesce(
            arg_min(ancestor_disabled_raw, walk_step) filter (where ancestor_disabled_raw is not null), false
        ) as is_disabled_inherited
    from ancestry
    group by category_id

),

statuses as (

    select
        walks.*,
        case
            when walks.top_next_ancestor_id is null then 'ok'
            when list_contains(walks.ancestor_chain, walks.top_next_ancestor_id) then 'cycle'
            when top_parents.category_id is null then 'missing_parent'
            else 'too_deep'
        end as tree_status
    from walks
    left join categories as top_parents
        on walks.top_next_ancestor_id = top_parents.category_id

),

final as (

    select
        categories.category_id,
        categories.parent_id,
        categories.disabled_raw,
        statuses.tree_status,
        case when statuses.tree_status in ('ok', 'missing_parent') then statuses.top_ancestor_id end
            as root_category_id,
        case when statuses.tree_status in ('ok', 'missing_parent') then statuses.top_step end as depth,
        case
            when statuses.tree_status in ('ok', 'missing_parent')
                then array_to_string(list_reverse(statuses.ancestor_chain), '/')
        end as path,
        statuses.is_disabled_inherited,
        {% if var('disabled_scope') == 'self' -%}
            statuses.is_disabled_inherited
        {%- else -%}
            statuses.has_disabled_in_chain
        {%- endif %} as is_disabled_effective
    from categories
    inner join statuses
        on categories.category_id = statuses.category_id

)

select * from final
