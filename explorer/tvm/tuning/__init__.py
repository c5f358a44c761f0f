"""MetaSchedule tuning on this CPU: the search seeded with the default schedules, a builder that keeps
its worker pool, and every measured candidate lowered and analysed so a pick can choose by energy.
"""
