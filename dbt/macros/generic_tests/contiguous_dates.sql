{#
    Fails when the dates in `column_name` are not one row per day without gaps from the first to the
    last: one failing row per missing or repeated date.
#}
{% test contiguous_dates(model, column_name) %}
    with

    present as (

        select
            {{ column_name }} as day,
            count(*) as occurrences
        from {{ model }}
        where {{ column_name }} is not null
        group by {{ column_name }}

    ),

    expected as (

        select cast(unnest(generate_series(min(day), max(day), interval 1 day)) as date) as day
        from present

    )

    select
        coalesce(expected.day, present.day) as day,
        coalesce(present.occurrences, 0) as occurrences
    from expected
    full outer join present
        on expected.day = present.day
    where coalesce(present.occurrences, 0) <> 1 or expected.day is null
{% endtest %}
