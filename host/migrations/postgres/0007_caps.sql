-- Verified entity capabilities (XEP-0115) shared by the pool: `hash:ver` -> features,
-- newline-separated. Only answers that hashed to their `ver` are written.
CREATE TABLE caps (
    ver TEXT PRIMARY KEY,
    features TEXT NOT NULL
);
