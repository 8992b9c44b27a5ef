-- The projection runner's own tables (customer-events, feature `projection`): which
-- generation of each read model serves, and each generation's checkpoint. The runner also
-- creates them if missing (for read models outside this service); here they exist before
-- any reader of the stats looks. The models' tables (rm_<model>_g<n>_…) are created by
-- the runner, per generation.
create table if not exists projections (
    name varchar(64) not null primary key,
    serving_generation bigint not null,
    building_generation bigint,
    rebuild_requested_at_ms bigint,
    retired_generation bigint,
    retired_at_ms bigint
);

create table if not exists projection_checkpoints (
    name varchar(64) not null,
    generation bigint not null,
    position bigint not null,
    event_at_ms bigint,
    updated_at_ms bigint not null,
    primary key (name, generation)
);
