"""What a sweep's tables become for people: report.md, report.html (plots), compare and project.
"""
