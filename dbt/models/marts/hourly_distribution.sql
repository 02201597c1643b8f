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
    from (values (1), (2), (3), (4), (5), (6), (7)) as weekdays (day_of_week)
    cross join (
        values
        (0), (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11),
        (12), (13), (14), (15), (16), (17), (18), (19), (20), (21), (22), (23)
    ) as hours (hour_of_day)

),

final as (

    select
        cast(grid.day_of_week as integer) as day_of_week,
        case grid.day_of_week
            when 1 then 'Monday'
            when 2 then 'Tuesday'
            when 3 then 'Wednesday'
            when 4 then 'Thursday'
            when 5 then 'Friday'
            when 6 then 'Saturday'
            when 7 then 'Sunday'
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
