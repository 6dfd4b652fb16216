-- data_quality: see CONTRACT.md section 3 and risk_core/outputs.py
create table if not exists data_quality (
    business_date date not null,
    run_id text,
    dataset text not null,
    "check" text not null,
    severity text,
    success boolean,
    failed_rows bigint,  -- count
    detail text,
    primary key (business_date, dataset, "check")
);
