// Panel module
