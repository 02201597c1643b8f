{#
    Safe parsing of the raw text columns (every raw source value is VARCHAR). Each macro returns NULL
    instead of raising, so a bad value becomes a data-quality finding (quarantine, test), never a
    crashed build. The Python reference in tests/reference.py implements the same rules independently.
#}

{#- Fast path first (nearly every value): a value that is not 4 characters long (`null`), not empty and
    starts and ends with a printable ASCII character (trim removes ' ' and the Unicode space separators,
    none of which is in '!'..'~') is present and unchanged by trim, with no trim or lower to pay for;
    the rest takes the full rule. #}
{% macro has_no_edge_space(expr) -%}
    length({{ expr }}) not in (0, 4)
    and {{ first_char(expr) }} between '!' and '~'
    and {{ last_char(expr) }} between '!' and '~'
{%- endmacro %}

{# `''`, `null`, `NULL` (any case, blanks around ignored) and SQL NULL mean missing. #}
{% macro is_missing(expr) -%}
    case
        when {{ expr }} is null then true
        when {{ has_no_edge_space(expr) }} then false
        else lower({{ trim_blanks(expr) }}) in ('', 'null')
    end
{%- endmacro %}

{# The trimmed text, or NULL when missing. #}
{% macro clean_text(expr) -%}
    case
        when {{ expr }} is null then null
        when {{ has_no_edge_space(expr) }} then {{ expr }}
        when lower({{ trim_blanks(expr) }}) not in ('', 'null') then {{ trim_blanks(expr) }}
    end
{%- endmacro %}

{# true/false/t/f/1/0/yes/no, case-insensitive; anything else (including missing) is NULL. #}
{% macro parse_boolean(expr) -%}
    case
        when {{ expr }} = 'true' then true
        when {{ expr }} = 'false' then false
        when lower({{ trim_blanks(expr) }}) in ('true', 't', '1', 'yes') then true
        when lower({{ trim_blanks(expr) }}) in ('false', 'f', '0', 'no') then false
    end
{%- endmacro %}

{#
    A UTC instant as a naive TIMESTAMP, or NULL. Accepted (blanks around ignored):
      YYYY-MM-DD HH:MM:SS[.f{1,6}]       the clean form; naive means UTC
      YYYY-MM-DDTHH:MM:SS[.f{1,6}]       ISO 8601 / RFC 3339, `T` or a space, `t`/`z` also allowed
      ... followed by an optional `Z` or an offset `+HH:MM`, `+HHMM`, `+HH` (or `-`), converted to UTC.

    One fast path for every accepted form: a single regular expression splits the value into its
    date-time and its zone (`timestamp_parts`, evaluated once per value), fixing every digit and
    the ranges of hours (00-23), minutes and seconds (00-59); DuckDB's own cast then reads the
    date-time (and rejects impossible dates such as 2000-02-30), and values with an offset are read
    as TIMESTAMPTZ, whose cast applies the offset whatever the session time zone. Only values that
    do not match as they are (blanks around, lower-case `t`/`z`) pay for trim and upper, then take
    the same rule. Costs measured at 10 M values: 1.1-1.5 s for every form (README, performance).
#}
{% macro timestamp_pattern() -%}
    '^(\d{4}-\d{2}-\d{2}[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?)(Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$'
{%- endmacro %}

{# The value split by the pattern: a struct (date_time, zone); date_time is '' when it does not match. #}
{% macro timestamp_parts(expr) -%}
    {{ return(adapter.dispatch('timestamp_parts', 'chat_analytics')(expr)) }}
{%- endmacro %}
{% macro duckdb__timestamp_parts(expr) -%}
    regexp_extract({{ expr }}, {{ timestamp_pattern() }}, ['date_time', 'zone'])
{%- endmacro %}
{# Java's `$` would also match before a final line break: `\z` is the end of the text, as RE2's `$`. #}
{% macro spark__timestamp_parts(expr) -%}
    named_struct(
        'date_time', regexp_extract({{ expr }}, r{{ timestamp_pattern()[:-2] }}\z', 1),
        'zone', regexp_extract({{ expr }}, r{{ timestamp_pattern()[:-2] }}\z', 2)
    )
{%- endmacro %}

{# Year 0000 does not exist (the cast would read it as 1 BC), nor does an offset's instant outside years
    0001-9999: NULL like any impossible date. An offset moves the instant by under a day, so only values
    on the first and the last day of that range need the second check. #}
{% macro timestamp_from_parts(parts, text) -%}
    {{ return(adapter.dispatch('timestamp_from_parts', 'chat_analytics')(parts, text)) }}
{%- endmacro %}
{% macro duckdb__timestamp_from_parts(parts, text) -%}
    case
        when {{ parts }}.date_time = '' or {{ parts }}.date_time < '0001' then null
        when {{ parts }}.zone in ('', 'Z') then try_cast({{ parts }}.date_time as timestamp)
        when {{ parts }}.date_time between '0001-01-02' and '9999-12-31'
            then make_timestamp(epoch_us(try_cast({{ text }} as timestamptz)))
        when
            make_timestamp(epoch_us(try_cast({{ text }} as timestamptz)))
            between timestamp '0001-01-01 00:00:00' and timestamp '9999-12-31 23:59:59.999999'
            then make_timestamp(epoch_us(try_cast({{ text }} as timestamptz)))
    end
{%- endmacro %}
{# Spark reads the date-time part (impossible dates are NULL) and applies the offset itself, in
    microseconds: Java's zone offsets stop at +-18:00, the pattern (and DuckDB) allow up to +-23:59. #}
{% macro spark__timestamp_from_parts(parts, text) -%}
    {%- set local = "cast(" ~ parts ~ ".date_time as timestamp)" -%}
    {%- set offset_minutes -%}
        (case when substr({{ parts }}.zone, 1, 1) = '-' then -1 else 1 end)
        * (cast(substr({{ parts }}.zone, 2, 2) as int) * 60
            + case when length({{ parts }}.zone) > 3 then cast(substr({{ parts }}.zone, -2, 2) as int) else 0 end)
    {%- endset -%}
    {#- (bigint: minutes times 60,000,000 overflows Spark's int) -#}
    {%- set shifted =
        "timestamp_micros(unix_micros(" ~ local ~ ") - cast(" ~ offset_minutes ~ " as bigint) * 60000000)"
    -%}
    case
        when {{ parts }}.date_time = '' or {{ parts }}.date_time < '0001' then null
        when {{ parts }}.zone in ('', 'Z') then {{ local }}
        when
            {{ shifted }}
            between timestamp '0001-01-01 00:00:00' and timestamp '9999-12-31 23:59:59.999999'
            then {{ shifted }}
    end
{%- endmacro %}

{# `text` the raw value, `parts` its `timestamp_parts` (computed once by the caller, e.g. in a CTE). #}
{% macro utc_timestamp(text, parts) -%}
    {%- set tidied = "upper(" ~ trim_blanks(text) ~ ")" -%}
    case
        when {{ parts }}.date_time <> '' then {{ timestamp_from_parts(parts, text) }}
        when {{ text }} is null then null
        else {{ timestamp_from_parts(timestamp_parts(tidied), tidied) }}
    end
{%- endmacro %}

{# The same rule on one expression, for places that parse a single value (tests, ad-hoc checks). #}
{% macro parse_utc_timestamp(expr) -%}
    {{ utc_timestamp(expr, timestamp_parts(expr)) }}
{%- endmacro %}
