"""smsd.agi"""
