from producers import command

command()()
