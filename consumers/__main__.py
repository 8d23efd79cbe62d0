from consumers import command

command()()
