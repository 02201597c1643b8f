{#
    Where DuckDB and Spark SQL differ, the models call these macros; `adapter.dispatch` picks the
    `duckdb__` or the `spark__` version by the target's type (dbt/profiles.yml: `local` or `spark`).
    One model per table whatever the engine: only these expressions change. The DuckDB versions are the
    fast paths measured in the README's performance section; the Spark versions compute the same values
    (tests/test_spark_engine.py compares every published model).
#}

{# Blanks around a value: DuckDB's trim removes exactly the Unicode space separators (Zs), Spark's only
    ' ', so Spark strips the same set with a regular expression. #}
{% macro trim_blanks(expr) -%}
    {{ return(adapter.dispatch('trim_blanks', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__trim_blanks(expr) -%}
    trim({{ expr }})
{%- endmacro %}
{% macro spark__trim_blanks(expr) -%}
    regexp_replace({{ expr }}, r'^\p{Zs}+|\p{Zs}+$', '')
{%- endmacro %}

{# The first and the last character of a text (NULL or '' for an empty one). #}
{% macro first_char(expr) -%}
    {{ return(adapter.dispatch('first_char', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__first_char(expr) -%}
    {{ expr }}[1]
{%- endmacro %}
{% macro spark__first_char(expr) -%}
    substr({{ expr }}, 1, 1)
{%- endmacro %}
{% macro last_char(expr) -%}
    {{ return(adapter.dispatch('last_char', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__last_char(expr) -%}
    {{ expr }}[-1]
{%- endmacro %}
{% macro spark__last_char(expr) -%}
    substr({{ expr }}, -1, 1)
{%- endmacro %}

{# Microseconds since 1970-01-01 00:00:00 of a naive UTC timestamp, and back. #}
{% macro epoch_us(expr) -%}
    {{ return(adapter.dispatch('epoch_us', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__epoch_us(expr) -%}
    epoch_us({{ expr }})
{%- endmacro %}
{% macro spark__epoch_us(expr) -%}
    unix_micros({{ expr }})
{%- endmacro %}
{% macro timestamp_from_epoch_us(expr) -%}
    {{ return(adapter.dispatch('timestamp_from_epoch_us', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__timestamp_from_epoch_us(expr) -%}
    make_timestamp({{ expr }})
{%- endmacro %}
{% macro spark__timestamp_from_epoch_us(expr) -%}
    timestamp_micros({{ expr }})
{%- endmacro %}

{# A timestamp `hours` (an integer expression) later. #}
{% macro add_hours(expr, hours) -%}
    {{ return(adapter.dispatch('add_hours', 'chat_analytics')(expr, hours)) }}
{%- endmacro %}
{% macro duckdb__add_hours(expr, hours) -%}
    ({{ expr }} + to_hours(cast({{ hours }} as bigint)))
{%- endmacro %}
{% macro spark__add_hours(expr, hours) -%}
    timestamp_micros(unix_micros({{ expr }}) + cast({{ hours }} as bigint) * 3600000000)
{%- endmacro %}

{# A date `days` (an integer expression, may be negative) later. #}
{% macro add_days(expr, days) -%}
    {{ return(adapter.dispatch('add_days', 'chat_analytics')(expr, days)) }}
{%- endmacro %}
{% macro duckdb__add_days(expr, days) -%}
    cast({{ expr }} + to_days(cast({{ days }} as integer)) as date)
{%- endmacro %}
{% macro spark__add_days(expr, days) -%}
    date_add({{ expr }}, cast({{ days }} as integer))
{%- endmacro %}

{# A naive UTC timestamp as naive wall-clock time in var('local_timezone'), with the zone's real
    daylight-saving history (DuckDB: ICU; Spark: the JVM's tz database), and the reverse for a local
    wall-clock time (midnights, which Melbourne's transitions never skip). #}
{% macro utc_to_local(expr) -%}
    {{ return(adapter.dispatch('utc_to_local', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__utc_to_local(expr) -%}
    ((({{ expr }}) at time zone 'UTC') at time zone '{{ var("local_timezone") }}')
{%- endmacro %}
{% macro spark__utc_to_local(expr) -%}
    from_utc_timestamp({{ expr }}, '{{ var("local_timezone") }}')
{%- endmacro %}
{% macro local_to_utc(expr) -%}
    {{ return(adapter.dispatch('local_to_utc', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__local_to_utc(expr) -%}
    cast((cast({{ expr }} as timestamp) at time zone '{{ var("local_timezone") }}') at time zone 'UTC' as timestamp)
{%- endmacro %}
{% macro spark__local_to_utc(expr) -%}
    to_utc_timestamp(cast({{ expr }} as timestamp), '{{ var("local_timezone") }}')
{%- endmacro %}

{# ISO weekday, 1 = Monday .. 7 = Sunday. #}
{% macro iso_weekday(expr) -%}
    {{ return(adapter.dispatch('iso_weekday', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__iso_weekday(expr) -%}
    isodow({{ expr }})
{%- endmacro %}
{% macro spark__iso_weekday(expr) -%}
    (weekday({{ expr }}) + 1)
{%- endmacro %}

{# A select-list generator: one row per step from `first` to `last` (both non-aggregate expressions of
    the FROM relation; inclusive for dates; for timestamps at least every step before `last`). #}
{% macro date_series(first, last) -%}
    {{ return(adapter.dispatch('date_series', 'chat_analytics')(first, last)) }}
{%- endmacro %}
{% macro duckdb__date_series(first, last) -%}
    cast(unnest(generate_series({{ first }}, {{ last }}, interval 1 day)) as date)
{%- endmacro %}
{# (Spark's sequence fails when `first` is after `last`: no rows then, as in DuckDB.) #}
{% macro spark__date_series(first, last) -%}
    explode(
        case
            when {{ first }} <= {{ last }}
                then sequence(cast({{ first }} as date), cast({{ last }} as date), interval 1 day)
        end
    )
{%- endmacro %}
{% macro hour_series(first, last) -%}
    {{ return(adapter.dispatch('hour_series', 'chat_analytics')(first, last)) }}
{%- endmacro %}
{% macro duckdb__hour_series(first, last) -%}
    unnest(range({{ first }}, {{ last }}, interval 1 hour))
{%- endmacro %}
{% macro spark__hour_series(first, last) -%}
    explode(case when {{ first }} <= {{ last }} then sequence({{ first }}, {{ last }}, interval 1 hour) end)
{%- endmacro %}

{# Arrays of text: a one-element array, an empty one, several concatenated, the first element. #}
{% macro text_array(value) -%}
    {{ return(adapter.dispatch('text_array', 'chat_analytics')(value)) }}
{%- endmacro %}
{% macro duckdb__text_array(value) -%}
    [{{ value }}]
{%- endmacro %}
{% macro spark__text_array(value) -%}
    array({{ value }})
{%- endmacro %}
{% macro empty_text_array() -%}
    {{ return(adapter.dispatch('empty_text_array', 'chat_analytics')()) }}
{%- endmacro %}
{% macro duckdb__empty_text_array() -%}
    []::varchar[]
{%- endmacro %}
{% macro spark__empty_text_array() -%}
    cast(array() as array<string>)
{%- endmacro %}
{% macro concat_arrays(terms) -%}
    {{ return(adapter.dispatch('concat_arrays', 'chat_analytics')(terms)) }}
{%- endmacro %}
{% macro duckdb__concat_arrays(terms) -%}
    {{ terms | join('\n    || ') }}
{%- endmacro %}
{% macro spark__concat_arrays(terms) -%}
    concat(
    {{ terms | join(',\n    ') }}
    )
{%- endmacro %}
{% macro first_element(expr) -%}
    {{ return(adapter.dispatch('first_element', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__first_element(expr) -%}
    {{ expr }}[1]
{%- endmacro %}
{% macro spark__first_element(expr) -%}
    element_at({{ expr }}, 1)
{%- endmacro %}

{# A struct of the given expressions, ordered field by field (for min/max and equality). #}
{% macro struct_of(exprs) -%}
    {{ return(adapter.dispatch('struct_of', 'chat_analytics')(exprs)) }}
{%- endmacro %}
{% macro duckdb__struct_of(exprs) -%}
    struct_pack({{ exprs | join(', ') }})
{%- endmacro %}
{% macro spark__struct_of(exprs) -%}
    struct({{ exprs | join(', ') }})
{%- endmacro %}

{#
    Incremental models. DuckDB deletes and inserts the touched keys (delete+insert, and fct_chats'
    delete pre-hook). Spark on plain Parquet tables can neither delete nor merge (that needs Delta,
    Iceberg or Hudi, which are not installable offline), so there the same models are rebuilt in full
    every build: `incremental_models()` is false, and the models take `incremental_materialization()`.
#}
{% macro incremental_models() -%}
    {{ return(adapter.dispatch('incremental_models', 'chat_analytics')()) }}
{%- endmacro %}
{% macro default__incremental_models() -%}
    {{ return(true) }}
{%- endmacro %}
{% macro spark__incremental_models() -%}
    {{ return(false) }}
{%- endmacro %}
{% macro incremental_materialization() -%}
    {{ return('incremental' if incremental_models() else 'table') }}
{%- endmacro %}

{# The top-ten marts are views over category_rankings on DuckDB; on Spark tables, so that their rows can
    be copied into the warehouse from Spark's files (chat_analytics.pipeline.spark.import_models). #}
{% macro top_ten_materialization() -%}
    {{ return(adapter.dispatch('top_ten_materialization', 'chat_analytics')()) }}
{%- endmacro %}
{% macro default__top_ten_materialization() -%}
    {{ return('view') }}
{%- endmacro %}
{% macro spark__top_ten_materialization() -%}
    {{ return('table') }}
{%- endmacro %}
