-- Why each home was chosen (`pool status --users`), and nodes being drained for
-- maintenance: a drained node takes no new users and moves its own away at a bounded rate.
ALTER TABLE pool_homes ADD COLUMN reason TEXT NOT NULL DEFAULT '';
CREATE INDEX pool_homes_recent ON pool_homes (node_id, chosen_at);
CREATE TABLE pool_drains (
    node_id TEXT PRIMARY KEY,
    since TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The operator's last `pool rebalance` request: each node then moves users above the mean
-- load to the homes the strategy chooses now, at the drain rate.
CREATE TABLE pool_rebalance (
    id INT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    requested_at TIMESTAMPTZ NOT NULL
);
