{#-
    The category tree of the current snapshot, resolved at any depth by pointer doubling (recursive SQL):
    in round k every category holds the segment of its first 2^k ancestors-or-self (its top, length, flags
    and the nearest ids) and the category just above that segment; a round joins each segment to the
    segment of the category above it, so it doubles. A segment that ends at a top (a root, or a category
    whose parent is not in the snapshot) is complete and carried unchanged. The walk stops when every
    segment is complete or after the round that covers as many steps as there are categories: a category
    still incomplete then has a parent chain longer than the snapshot, so it repeats: it is on a parent
    loop or below one. About log2(depth) rounds over every category: cost grows with categories x
    log2(depth), never with the square of the depth or of a loop's length.

    tree_status: `ok` (reaches a root), `missing_parent` (reaches a top whose parent does not exist: that
    top acts as the root), `cycle` (on a parent loop or below one; no root, depth or path).

    path: the ids from the root down to the category joined with `/`; deeper than path_max_ids ids it is
    the root, `…`, then the last path_max_ids ids (`depth` stays exact), so its size stays bounded.

    Disabled flags: an empty `disabled` inherits the nearest ancestor's value, a chain with none is
    enabled (`is_disabled_inherited`). var('disabled_scope') = `subtree` (default): a category is
    effectively disabled when it or any ancestor is disabled (an explicit `false` below a disabled
    ancestor does not re-enable it); `self`: only the category's own, inherited value counts. For a
    category in a cycle "its ancestors" are every category on its parent chain up to and around the loop.
-#}
{%- set path_max_ids = 64 -%}

with recursive

categories as (

    select
        category_id,
        parent_id,
        disabled_raw
    from {{ ref('int_categories_current') }}

),

{{ category_walk(path_max_ids) }}

final as (

    select
        categories.category_id,
        categories.parent_id,
        categories.disabled_raw,
        resolved.tree_status,
        resolved.root_category_id,
        resolved.depth,
        resolved.path,
        resolved.is_disabled_inherited,
        {% if var('disabled_scope') == 'self' -%}
            resolved.is_disabled_inherited
        {%- else -%}
            resolved.has_disabled_in_chain
        {%- endif %} as is_disabled_effective
    from categories
    inner join resolved
        on categories.category_id = resolved.category_id

)

select * from final
