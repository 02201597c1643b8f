{#-
    Every monitored metric on every evaluated Melbourne day with its expected band. The baseline of a
    day is the same weekday over the trailing `anomaly_training_weeks` weeks (usable days only; the day
    itself never counts in its own baseline): expected = their median. The spread is robust and pooled
    over every weekday of the training window: 1.4826 x the median absolute residual of each training
    day from its own weekday's median (counts on a log scale, ln((x + 1) / (median + 1)): day-to-day
    swings are multiplicative; shares as they are), never below the sampling noise of the day (Poisson
    for counts, binomial for shares with one pseudo-chat each way),
    widened by sqrt(1 + pi / 2n) for the uncertainty of a median of n weeks. A day is evaluated when it
    is complete (the resolved share: also settled) and has at least `anomaly_min_training_weeks`
    baseline days. The band is expected +- `anomaly_sensitivity` spreads; `score` is
    (observed - expected) / spread.
-#}

with

daily as (

    select
        day,
        chats_created,
        customer_initiated,
        resolved_in_window,
        unknown_or_disabled_category,
        quarantined,
        is_complete,
        is_resolution_settled
    from {{ ref('volume_daily_metrics') }}

),

observations as (

    select
        day,
        'chats_created' as metric,
        cast(chats_created as double) as observed,
        chats_created as denominator,
        is_complete as is_usable
    from daily
    union all
    select
        day,
        'customer_initiated_share' as metric,
        customer_initiated / nullif(chats_created, 0) as observed,
        chats_created as denominator,
        is_complete and chats_created > 0 as is_usable
    from daily
    union all
    select
        day,
        'resolved_share' as metric,
        resolved_in_window / nullif(chats_created, 0) as observed,
        chats_created as denominator,
        is_complete and is_resolution_settled and chats_created > 0 as is_usable
    from daily
    union all
    select
        day,
        'unknown_or_disabled_category_share' as metric,
        unknown_or_disabled_category / nullif(chats_created, 0) as observed,
        chats_created as denominator,
        is_complete and chats_created > 0 as is_usable
    from daily
    union all
    select
        day,
        'quarantined_share' as metric,
        quarantined / nullif(chats_created + quarantined, 0) as observed,
        chats_created + quarantined as denominator,
        is_complete and chats_created + quarantined > 0 as is_usable
    from daily

),

{# Scored on a variance-stabilised scale: ln(x + 1) for counts (day-to-day swings are multiplicative),
    2 sqrt(n) asin(sqrt((x + 3/8) / (n + 3/4))) for shares of n chats (Anscombe: unit variance for
    binomial noise whatever the share and the day's volume). #}
usable as (

    select
        day,
        metric,
        observed,
        denominator,
        case
            when metric = 'chats_created' then ln(observed + 1)
            else asin(sqrt((observed * denominator + 0.375) / (denominator + 0.75)))
        end as transformed,
        case when metric = 'chats_created' then 1 else 2 * sqrt(denominator) end as scale
    from observations
    where is_usable

),

training as (

    select
        judged.metric,
        judged.day,
        {{ iso_weekday('past.day') }} as history_weekday,
        past.observed,
        past.transformed,
        past.scale
    from usable as judged
    inner join usable as past
        on
            judged.metric = past.metric
            and judged.day > past.day
            and past.day >= {{ add_days('judged.day', '-7 * ' ~ var('anomaly_training_weeks')) }}

),

weekday_medians as (

    select
        metric,
        day,
        history_weekday,
        median(transformed) as center,
        count(*) as weekday_days
    from training
    group by metric, day, history_weekday

),

residuals as (

    select
        training.metric,
        training.day,
        (training.transformed - weekday_medians.center) * training.scale as residual
    from training
    inner join weekday_medians
        on
            training.metric = weekday_medians.metric
            and training.day = weekday_medians.day
            and training.history_weekday = weekday_medians.history_weekday

),

pooled_deviations as (

    select
        metric,
        day,
        median(abs(residual)) as median_abs_residual
    from residuals
    group by metric, day

),

spreads as (

    select
        usable.day,
        usable.metric,
        usable.observed,
        usable.denominator,
        usable.transformed,
        usable.scale,
        baselines.center,
        baselines.weekday_days as training_days,
        greatest(
            1.4826 * pooled_deviations.median_abs_residual,
            case
                when usable.metric = 'chats_created' then 1 / sqrt(greatest(exp(baselines.center) - 1, 1))
                else 1
            end
        ) * sqrt(1 + pi() / (2 * baselines.weekday_days)) / usable.scale as spread
    from usable
    inner join weekday_medians as baselines
        on
            usable.metric = baselines.metric
            and usable.day = baselines.day
            and {{ iso_weekday('usable.day') }} = baselines.history_weekday
    inner join pooled_deviations
        on usable.metric = pooled_deviations.metric and usable.day = pooled_deviations.day
    where baselines.weekday_days >= {{ var('anomaly_min_training_weeks') }}

),

evaluated_days as (

    select
        day,
        dense_rank() over (order by day desc) as recency
    from (select distinct day from spreads) as spread_days

),

scored as (

    select
        spreads.metric,
        spreads.day,
        spreads.observed,
        spreads.denominator,
        spreads.center,
        greatest(0, spreads.center - {{ var('anomaly_sensitivity') }} * spreads.spread) as lower_center,
        least(
            case when spreads.metric = 'chats_created' then cast('infinity' as double) else pi() / 2 end,
            spreads.center + {{ var('anomaly_sensitivity') }} * spreads.spread
        ) as upper_center,
        (spreads.transformed - spreads.center) / spreads.spread as score,
        spreads.training_days,
        evaluated_days.recency <= {{ var('anomaly_alert_days') }} as is_recent
    from spreads
    inner join evaluated_days on spreads.day = evaluated_days.day

),

bounded as (

    select
        metric,
        day,
        observed,
        case
            when metric = 'chats_created' then exp(center) - 1
            else greatest(0, least(1, (pow(sin(center), 2) * (denominator + 0.75) - 0.375) / denominator))
        end as expected,
        case
            when metric = 'chats_created' then exp(lower_center) - 1
            else greatest(0, least(1, (pow(sin(lower_center), 2) * (denominator + 0.75) - 0.375) / denominator))
        end as lower_bound,
        case
            when metric = 'chats_created' then exp(upper_center) - 1
            else greatest(0, least(1, (pow(sin(upper_center), 2) * (denominator + 0.75) - 0.375) / denominator))
        end as upper_bound,
        score,
        training_days,
        is_recent
    from scored

),

final as (

    select
        metric,
        day,
        observed,
        expected,
        lower_bound,
        upper_bound,
        case
            when score < -{{ var('anomaly_sensitivity') }} then 'low'
            when score > {{ var('anomaly_sensitivity') }} then 'high'
        end as direction,
        score,
        abs(score) > {{ var('anomaly_sensitivity') }} as is_anomaly,
        training_days,
        is_recent
    from bounded

)

select * from final
