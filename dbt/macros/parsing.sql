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
    and {{ expr }}[1] between '!' and '~'
    and {{ expr }}[-1] between '!' and '~'
{%- endmacro %}

{# `''`, `null`, `NULL` (any case, blanks around ignored) and SQL NULL mean missing. #}
{% macro is_missing(expr) -%}
    case
        when {{ expr }} is null then true
        when {{ has_no_edge_space(expr) }} then false
        else lower(trim({{ expr }})) in ('', 'null')
    end
{%- endmacro %}

{# The trimmed text, or NULL when missing. #}
{% macro clean_text(expr) -%}
    case
        when {{ expr }} is null then null
        when {{ has_no_edge_space(expr) }} then {{ expr }}
        when lower(trim({{ expr }})) not in ('', 'null') then trim({{ expr }})
    end
{%- endmacro %}

{# true/false/t/f/1/0/yes/no, case-insensitive; anything else (including missing) is NULL. #}
{% macro parse_boolean(expr) -%}
    case
        when {{ expr }} = 'true' then true
        when {{ expr }} = 'false' then false
        when lower(trim({{ expr }})) in ('true', 't', '1', 'yes') then true
        when lower(trim({{ expr }})) in ('false', 'f', '0', 'no') then false
    end
{%- endmacro %}

{#
    A UTC instant as a naive TIMESTAMP, or NULL. Accepted (blanks around ignored):
      YYYY-MM-DD HH:MM:SS[.f{1,6}]       the clean form; naive means UTC
      YYYY-MM-DDTHH:MM:SS[.f{1,6}]       ISO 8601 / RFC 3339, `T` or a space, `t`/`z` also allowed
      ... followed by an optional `Z` or an offset `+HH:MM`, `+HHMM`, `+HH` (or `-`), converted to UTC.
    The pattern fixes the digits; try_strptime then rejects impossible dates and times (2000-02-30,
    24:00:00, 23:59:60).
#}
{% macro timestamp_pattern() -%}
    '^(\d{4}-\d{2}-\d{2})[ Tt](\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(?:[Zz]|([+-])([01]\d|2[0-3])(?::?([0-5]\d))?)?$'
{%- endmacro %}

{% macro parse_utc_timestamp(expr) -%}
    {%- set text = "trim(" ~ expr ~ ")" -%}
    {%- set pattern = timestamp_pattern() -%}
    {#- Cheap exits first: missing and short values, then the clean form (nearly every row): a value of
        19 characters that DuckDB's own cast reads and prints back unchanged is exactly
        `YYYY-MM-DD HH:MM:SS` (years 0001-9999), about three times cheaper than a pattern match plus
        strptime; only the rest pays for the full pattern. #}
    case
        when {{ expr }} is null or length({{ expr }}) < 19 then null
        when length({{ expr }}) = 19 and cast(try_cast({{ expr }} as timestamp) as varchar) = {{ expr }}
            then try_cast({{ expr }} as timestamp)
        else
            try_strptime(
                regexp_extract({{ text }}, {{ pattern }}, 1) || ' ' || regexp_extract({{ text }}, {{ pattern }}, 2),
                ['%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M:%S.%f']
            )
            - to_minutes(
                case regexp_extract({{ text }}, {{ pattern }}, 3) when '-' then -1 else 1 end
                * (
                    coalesce(try_cast(nullif(regexp_extract({{ text }}, {{ pattern }}, 4), '') as integer), 0) * 60
                    + coalesce(try_cast(nullif(regexp_extract({{ text }}, {{ pattern }}, 5), '') as integer), 0)
                )
            )
    end
{%- endmacro %}

{# A naive UTC TIMESTAMP as naive wall-clock time in var('local_timezone') (ICU zone rules, DST-aware). #}
{% macro utc_to_local(expr) -%}
    ((({{ expr }}) at time zone 'UTC') at time zone '{{ var("local_timezone") }}')
{%- endmacro %}
