{{ config(materialized='view') }}

{{ top_ten_categories('rank_lowest_resolution_rate') }}
