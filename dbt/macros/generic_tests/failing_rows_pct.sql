{#
    Percentage-threshold data-quality test.

    dbt's warn_if / error_if compare a COUNT of failing rows with a constant, so a percentage cannot be
    written there directly. This test returns one row per failing row (the row itself plus the number of
    rows checked, `total_rows`) and sets its own thresholds:
      warn  when any row fails                                 (count(*) > 0)
      error when the failing share is above `error_above_pct`  (count(*) > pct / 100 * total_rows)
    Because the error threshold is an aggregate over the returned rows, it is evaluated inside dbt's
    standard test query (`select count(*) ..., count(*) <error_if> as should_error from (<this test>)`).

    Arguments:
      failing_when     SQL boolean expression over the model's columns; true marks a failing row.
      error_above_pct  percentage (0.1 = 0.1 %) of checked rows above which the test errors.
    The test's `where` config narrows the checked rows (numerator and denominator alike).
      only_batches_after  optional `schema.table` of a model that stages the tested source by
                          `_batch_id`: check only the batches newer than its newest (all batches when
                          it does not exist yet). Resolved when the test runs, without a ref, so a
                          source test still runs before that model.
    `model` is read twice on purpose: a CTE used twice would be materialised by DuckDB (a full copy).
#}
{% test failing_rows_pct(model, failing_when, error_above_pct, only_batches_after=none, column_name=none) %}
{%- set batch_filter = unstaged_batch_filter(only_batches_after) %}
    {{ config(
        fail_calc='count(*)',
        warn_if='> 0',
        error_if='> ' ~ (error_above_pct | float) ~ ' / 100.0 * max(total_rows)',
    ) }}

    with

    totals as (
        select count(*) as total_rows from {{ model }}
        where {{ batch_filter }}
    )

    select
        checked_rows.*,
        totals.total_rows
    from {{ model }} as checked_rows
    cross join totals
    where {{ batch_filter }} and coalesce(({{ failing_when }}), false)
{% endtest %}
