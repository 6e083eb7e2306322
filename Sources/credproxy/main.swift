import CredproxyCore

print("credproxy")
