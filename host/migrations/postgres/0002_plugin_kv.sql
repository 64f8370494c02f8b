-- Per-plugin key/value storage (wit: poolxmpp:plugin/storage).
CREATE TABLE plugin_kv (
    plugin TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (plugin, key)
);
