{#-
    One row per Melbourne local day from the first to the last chat creation day (days without chats
    included; at most the newest `anomaly_history_days` plus the training weeks): the day's volumes and whether the data window covers the whole day. A day is complete
    when the first chat created (UTC) is at or before its local midnight and the last chat created is at
    or after the next local midnight: the partial first and last days of an extract are not complete.
    The day's resolved share counts resolutions within `anomaly_resolution_window_hours` of creation and
    is settled once the data window reaches that long past the day's end.
-#}

with

chats as (

    select
        created_date_local,
        created_at_utc,
        resolved_at_utc,
        is_customer_initiated,
        category_status
    from {{ ref('fct_chats') }}

),

quarantined_versions as (

    select created_at_utc
    from {{ ref('int_chat_versions_classified') }}
    where disposition = 'quarantined' and created_at_utc is not null

),

coverage as (

    select
        min(created_at_utc) as first_created_at_utc,
        max(created_at_utc) as last_created_at_utc,
        min(created_date_local) as first_day,
        max(created_date_local) as last_day
    from chats

),

{# The newest `anomaly_history_days` days and their training weeks (volume_bands): the cost stays bounded
    whatever the data's span (one hostile chat dated year 0001 or 9999 would otherwise ask for every day
    in between). #}
calendar as (

    select
        {{ date_series(
            "greatest(first_day, " ~ add_days('last_day', '-(' ~ var('anomaly_history_days')
                ~ ' + 7 * ' ~ var('anomaly_training_weeks') ~ ')') ~ ")",
            'last_day'
        ) }} as day
    from coverage

),

chats_per_day as (

    select
        created_date_local as day,
        count(*) as chats_created,
        count(*) filter (where is_customer_initiated) as customer_initiated,
        count(*) filter (
            where resolved_at_utc
            <= {{ add_hours('created_at_utc', var('anomaly_resolution_window_hours')) }}
        ) as resolved_in_window,
        count(*) filter (where category_status in ('unknown', 'disabled')) as unknown_or_disabled_category
    from chats
    group by created_date_local

),

quarantined_per_day as (

    select
        cast({{ utc_to_local('created_at_utc') }} as date) as day,
        count(*) as quarantined
    from quarantined_versions
    group by all

),

day_bounds as (

    select
        day,
        {{ local_to_utc('day') }} as day_start_utc,
        {{ local_to_utc(add_days('day', 1)) }} as day_end_utc
    from calendar

),

final as (

    select
        day_bounds.day,
        {{ iso_weekday('day_bounds.day') }} as day_of_week,
        coalesce(chats_per_day.chats_created, 0) as chats_created,
        coalesce(chats_per_day.customer_initiated, 0) as customer_initiated,
        coalesce(chats_per_day.resolved_in_window, 0) as resolved_in_window,
        coalesce(chats_per_day.unknown_or_disabled_category, 0) as unknown_or_disabled_category,
        coalesce(quarantined_per_day.quarantined, 0) as quarantined,
        day_bounds.day_start_utc,
        day_bounds.day_end_utc,
        coverage.first_created_at_utc <= day_bounds.day_start_utc
        and coverage.last_created_at_utc >= day_bounds.day_end_utc as is_complete,
        coverage.last_created_at_utc
        >= {{ add_hours('day_bounds.day_end_utc', var('anomaly_resolution_window_hours')) }}
            as is_resolution_settled
    from day_bounds
    cross join coverage
    left join chats_per_day on day_bounds.day = chats_per_day.day
    left join quarantined_per_day on day_bounds.day = quarantined_per_day.day

)

select * from final
