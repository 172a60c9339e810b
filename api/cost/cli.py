def add_cost_parser(commands):
    pass
