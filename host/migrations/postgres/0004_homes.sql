-- Home nodes (DESIGN §4): where each user should be served. Sticky while the node lives;
-- chosen again when it dies. `epoch` is the home node's epoch when it was chosen.
CREATE TABLE pool_homes (
    bare TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    strategy TEXT NOT NULL,
    chosen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX pool_homes_node ON pool_homes (node_id);
