-- Schema version 5: the function chains at the pipeline's stages (this host's scope).
--
-- One row per function placed in a chain. Its id is the function's instance number, the slot
-- of its counters in the data plane (1 to 1023), kept while it stays in the chain whatever its
-- position; positions are 1-based and dense within a stage.
CREATE TABLE chain_links (
    id       INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 1023),
    stage    TEXT NOT NULL CHECK (stage IN ('ON_XDP_TX', 'ON_XDP_PASS', 'ON_XDP_REDIRECT',
                                            'ON_XDP_DROP', 'ON_XDP_SCALED_EP')),
    position INTEGER NOT NULL CHECK (position >= 1),
    function TEXT NOT NULL,
    UNIQUE (stage, position)
) STRICT;
