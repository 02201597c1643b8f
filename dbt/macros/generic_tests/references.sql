{#
    Referential check without a package: fails on every non-NULL `column_name` value that has no match
    in `to`.`field` (e.g. a category whose parent is not in the snapshot).
#}
{% test references(model, column_name, to, field) %}
    select child.*
    from {{ model }} as child
    where
        child.{{ column_name }} is not null
        and not exists (
            select 1
            from {{ to }} as parent
            where parent.{{ field }} = child.{{ column_name }}
        )
{% endtest %}
