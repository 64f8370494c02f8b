-- Pool coordination (DESIGN §4). Times are the database's own clock (now()), so nodes
-- with skewed clocks still agree on who holds a lease.

-- Membership: one row per node id. `epoch` grows on every join; `instance` is random per
-- process, telling a second process with the same id from the node itself.
CREATE TABLE pool_nodes (
    node_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    instance TEXT NOT NULL,
    link_addr TEXT NOT NULL,
    client_addrs TEXT NOT NULL,
    state TEXT NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    sessions BIGINT NOT NULL DEFAULT 0,
    load DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- The session directory: which node serves each full JID, under which epoch of it.
CREATE TABLE pool_sessions (
    bare TEXT NOT NULL,
    resource TEXT NOT NULL,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    bound_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bare, resource)
);
CREATE INDEX pool_sessions_node ON pool_sessions (node_id, epoch);

-- Ownership of keyed things (MUC rooms, pubsub nodes): the owner and the fencing token
-- that grows on every change of hands.
CREATE TABLE pool_ownership (
    key TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    node_epoch BIGINT NOT NULL,
    fence BIGINT NOT NULL
);
