"""What a duty is and when it is due: rule files, the working-day calendar, planning.

Pure code: nothing here reads the clock or touches the database.
"""
