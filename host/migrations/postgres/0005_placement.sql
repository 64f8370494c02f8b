-- Why each home was chosen (`pool status --users`), and nodes being drained for
-- maintenance: a drained node takes no new users and moves its own away at a bounded rate.
ALTER TABLE pool_homes ADD COLUMN reason TEXT NOT NULL DEFAULT '';
CREATE INDEX pool_homes_recent ON pool_homes (node_id, chosen_at);
CREATE TABLE pool_drains (
    node_id TEXT PRIMARY KEY,
    since TIMESTAMPTZ NOT NULL DEFAULT now()
);
