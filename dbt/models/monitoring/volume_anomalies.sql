{#- The evaluated days on which a metric left its expected band (volume_bands), newest first. -#}

with

bands as (

    select
        metric,
        day,
        observed,
        expected,
        lower_bound,
        upper_bound,
        direction,
        score,
        is_recent
    from {{ ref('volume_bands') }}
    where is_anomaly

)

select * from bands
order by day desc, metric asc
