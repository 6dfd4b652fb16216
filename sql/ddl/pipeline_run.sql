-- pipeline_run: see CONTRACT.md section 3 and risk_core/outputs.py
create table if not exists pipeline_run (
    run_id text not null,
    business_date date,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    status text,
    code_version text,
    ruleset text,
    ruleset_sha256 text,
    inputs_sha256 text,
    landing_dir text,
    message text,
    primary key (run_id)
);
