{#-
    Chats by local weekday and hour of creation: a full 7 x 24 grid, empty cells included.
    avg_chats_per_week = chats / number of dates with that weekday in the local-date span of the data
    (first to last created_date_local, inclusive). One pass over fct_chats: the span comes from the
    per-cell first and last dates.
-#}

with

chats as (

    select
        created_at_local,
        created_date_local
    from {{ ref('fct_chats') }}

),

cells as (

    select
        {{ iso_weekday('created_at_local') }} as day_of_week,
        hour(created_at_local) as hour_of_day,
        count(*) as chats,
        min(created_date_local) as first_date,
        max(created_date_local) as last_date
    from chats
    group by {{ iso_weekday('created_at_local') }}, hour(created_at_local)

),

span as (

    select
        min(first_date) as first_date,
        max(last_date) as last_date
    from cells

),

span_dates as (

    select {{ date_series('first_date', 'last_date') }} as local_date
    from span

),

weekday_occurrences as (

    select
        {{ iso_weekday('local_date') }} as day_of_week,
        count(*) as weeks_observed
    from span_dates
    group by {{ iso_weekday('local_date') }}

),

grid as (

    select
        weekdays.day_of_week,
        hours.hour_of_day
    from (values {% for day in range(1, 8) %}({{ day }}){{ ', ' if not loop.last }}{% endfor %}) as weekdays (day_of_week)
    cross join (values {% for hour in range(24) %}({{ hour }}){{ ', ' if not loop.last }}{% endfor %}) as hours (hour_of_day)

),

final as (

    select
        cast(grid.day_of_week as integer) as day_of_week,
        case grid.day_of_week
            {%- for name in ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'] %}
                when {{ loop.index }} then '{{ name }}'
            {%- endfor %}
        end as day_name,
        cast(grid.hour_of_day as integer) as hour_of_day,
        coalesce(cells.chats, 0) as chats,
        cast(coalesce(cells.chats, 0) as double) / weekday_occurrences.weeks_observed as avg_chats_per_week
    from grid
    left join cells
        on
            grid.day_of_week = cells.day_of_week
            and grid.hour_of_day = cells.hour_of_day
    left join weekday_occurrences
        on grid.day_of_week = weekday_occurrences.day_of_week

)

select * from final
