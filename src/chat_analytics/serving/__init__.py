"""What analysts read: publish (serving file and Parquet, atomic releases), the HTML report, dbt docs."""
