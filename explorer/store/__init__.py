"""What is kept between runs, keyed by content and code version: the cache (prepared models,
lowerings, measurements, builds), a sweep's SQLite results store and MetaSchedule's records.
"""
