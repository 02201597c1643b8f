{#
    Fails on every row where `expression` is not true (false or NULL).
    With `column_name` (a column-level test) the expression may use it, e.g. `expression: ">= 0"` is
    read as `<column> >= 0` when it starts with a comparison operator.
#}
{% test expression_is_true(model, expression, column_name=none) %}
    {%- set condition = expression -%}
    {%- if column_name is not none and (expression | trim)[:1] in ['<', '>', '=', '!'] -%}
        {%- set condition = column_name ~ ' ' ~ expression -%}
    {%- endif -%}
    select *
    from {{ model }}
    where not coalesce(({{ condition }}), false)
{% endtest %}
