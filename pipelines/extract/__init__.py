"""Extract stage: incremental reads of the warehouse into a day-partitioned snapshot and the night's window."""
