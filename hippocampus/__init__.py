"""hippocampus"""
