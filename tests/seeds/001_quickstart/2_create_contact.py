import os, requests
res = requests.post(
'https://api.pathbound.ai/v1/contacts',
headers={
'Authorization': f"Bearer {os.environ['PATHBOUND_API_KEY']}",
'Content-Type': 'application/json',
},
json={
'email': 'ada@example.com',
'properties': {
'firstname': 'Ada',
'lastname': 'Lovelace',
'company': 'Analytical Engines',
'lifecyclestage': 'lead',
},
},
)
print(res.json()['contact']['_id'])
