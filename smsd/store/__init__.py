"""smsd.store"""
