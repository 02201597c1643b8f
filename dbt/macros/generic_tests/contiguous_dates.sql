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

    span as (

        select
            min(day) as first_day,
            max(day) as last_day
        from present

    ),

    expected as (

        select {{ chat_analytics.date_series('first_day', 'last_day') }} as day
        from span

    )

    select
        coalesce(expected.day, present.day) as day,
        coalesce(present.occurrences, 0) as occurrences
    from expected
    full outer join present
        on expected.day = present.day
    where coalesce(present.occurrences, 0) <> 1 or expected.day is null
{% endtest %}
