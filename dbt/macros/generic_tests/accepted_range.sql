{#
    Fails on every non-NULL value outside [min_value, max_value] (or the open interval when
    inclusive=false). Either bound may be omitted. Pair with not_null when NULL is also wrong.
#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range needs min_value, max_value or both") }}
    {%- endif -%}
    {%- set conditions = [] -%}
    {%- if min_value is not none -%}
        {%- do conditions.append(column_name ~ (' >= ' if inclusive else ' > ') ~ min_value) -%}
    {%- endif -%}
    {%- if max_value is not none -%}
        {%- do conditions.append(column_name ~ (' <= ' if inclusive else ' < ') ~ max_value) -%}
    {%- endif -%}
    select *
    from {{ model }}
    where {{ column_name }} is not null and not ({{ conditions | join(' and ') }})
{% endtest %}
