{#
    Books test on a ledger model: fails on every row where `total_column` is not exactly the sum of
    `part_columns` (NULL counts as a failure, not as zero).
#}
{% test row_count_reconciliation(model, total_column, part_columns) %}
    select
        *,
        {{ total_column }} - ({{ part_columns | join(' + ') }}) as difference
    from {{ model }}
    where {{ total_column }} is distinct from ({{ part_columns | join(' + ') }})
{% endtest %}
