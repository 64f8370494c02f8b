-- Timers plugins set (wit: poolxmpp:plugin/timers@0.2.0): kept so they survive a reload of
-- the plugin and a restart of the node. `node` fires it; `token` tells one setting of a
-- name from the next, so a timer that fired deletes only itself.
CREATE TABLE plugin_timers (
    plugin TEXT NOT NULL,
    name TEXT NOT NULL,
    node TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    token BIGINT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (plugin, name)
);
CREATE INDEX plugin_timers_node ON plugin_timers (node);
