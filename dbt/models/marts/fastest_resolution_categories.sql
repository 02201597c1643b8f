{{ config(materialized='view') }}

{{ top_ten_categories('rank_fastest_resolution') }}
