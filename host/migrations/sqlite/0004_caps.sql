-- Verified entity capabilities (XEP-0115): `hash:ver` -> features, newline-separated.
CREATE TABLE caps (
    ver TEXT PRIMARY KEY,
    features TEXT NOT NULL
);
